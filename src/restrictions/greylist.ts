/**
 * @module restrictions/greylist
 * SUMMARY: check_greylist, greygate's built-in greylisting restriction. The greylist store
 * and its decisions land in a later change; until then the name is known (so configurations
 * that list it load) and evaluating it fails closed: 451 4.3.5 Server configuration error,
 * with a warning note saying greylisting is not configured yet. It never permits.
 * SEE ALSO: design.md (check_greylist), postgrey(8), RFC 6647.
 */
import { serverError } from './evaluate.js';
import type { RestrictionDef } from './registry.js';

export const GREYLIST_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'check_greylist',
    args: 0,
    compile: () => (ev) => serverError(ev, 'check_greylist: greylisting is not configured yet in this version; failing closed'),
  },
];
