/**
 * A FIFO mutex for the one worker (one GPU): a generation job holds it for one
 * request, a LoRA training for its whole run, so neither starts while the
 * other has the device and both queues stay honest about what is waiting.
 */
export class WorkerLock {
  private holder: string | null = null;
  private waiters: { who: string; resolve: (release: () => void) => void }[] = [];

  /** Who holds it now ('generation', 'training:<id>'), for the UI's "waiting for …". */
  get heldBy(): string | null {
    return this.holder;
  }

  acquire(who: string): Promise<() => void> {
    return new Promise((resolve) => {
      this.waiters.push({ who, resolve });
      this.next();
    });
  }

  private next(): void {
    if (this.holder !== null) return;
    const w = this.waiters.shift();
    if (!w) return;
    this.holder = w.who;
    let released = false;
    w.resolve(() => {
      if (released) return;
      released = true;
      this.holder = null;
      queueMicrotask(() => this.next());
    });
  }
}
