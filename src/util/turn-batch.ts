/**
 * @module util/turn-batch
 * SUMMARY: perTurn(flush) returns an add(item) that gathers the items added during one turn
 * of the event loop and hands them to flush() together, once, at the end of the turn
 * (setImmediate): what arrives in a burst (a group commit's messages, a batch of
 * deliveries) crosses a thread boundary in one postMessage instead of one each.
 * DIAGNOSTICS: none; flush() gets a fresh array each time and owns it.
 */
export function perTurn<T>(flush: (items: T[]) => void): (item: T) => void {
  let items: T[] = [];
  const run = (): void => {
    const batch = items;
    items = [];
    flush(batch);
  };
  return (item) => {
    if (items.length === 0) setImmediate(run);
    items.push(item);
  };
}
