/** At most `concurrency` calls of `worker` in flight, items pulled lazily (sync or async iterable). */
export async function forEachLimit<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = (Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]()) as AsyncIterator<T> | Iterator<T>;
  let done = false;
  let failure: unknown = undefined;
  const lane = async (): Promise<void> => {
    while (!done && failure === undefined) {
      const next = await iterator.next();
      if (next.done) {
        done = true;
        return;
      }
      try {
        await worker(next.value);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  if (failure !== undefined) throw failure;
}
