// One answer for many askers: what an expensive read (GET /status/store asks every node) gives
// is shared by every request that arrives while it runs, and reused while it is fresh, so a flood
// of such requests costs the store one read per interval instead of one per request.

export function coalesce<T>(read: () => Promise<T>, freshMs: number, now: () => number): () => Promise<T> {
  let running: Promise<T> | null = null;
  let last: { value: T; atMs: number } | null = null;
  return () => {
    if (last !== null && now() - last.atMs < freshMs) return Promise.resolve(last.value);
    if (running !== null) return running;
    const started = now();
    running = read().then(
      (value) => {
        last = { value, atMs: started };
        running = null;
        return value;
      },
      (error: unknown) => {
        running = null;
        throw error;
      },
    );
    return running;
  };
}
