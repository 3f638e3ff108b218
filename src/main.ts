#!/usr/bin/env node
/**
 * @module main
 * SUMMARY: the `greygate` executable; hands argv to cli/main.ts and exits with its status.
 */
import { main } from './cli/main.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
