/**
 * Calls `worker` for each item with at most `concurrency` calls in flight, pulling items lazily
 * from the iterable so memory stays flat however many items there are. Stops pulling new items
 * once `signal` aborts; calls in flight finish.
 */
export async function forEachConcurrent<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  worker: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const iterator = (Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]()) as AsyncIterator<T> | Iterator<T>;
  let exhausted = false;
  const lane = async (): Promise<void> => {
    while (!exhausted && !signal?.aborted) {
      const next = await iterator.next();
      if (next.done) {
        exhausted = true;
        return;
      }
      await worker(next.value);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
}
