// The one place the runtime hands an input to the core and carries out what comes back, in the
// order the Step type names: stage for the disk, release the parked requests the step let go on,
// then give the input's own outcome to its caller (which sends and replies, after Storage.flush
// when it acknowledges a write).

import type { Input, NodeCore, Outputs, Persist, WakeResult } from '../core/node-core.ts';
import type { Timers } from './env.ts';
import type { Storage } from './storage.ts';

/** Hands one input to the core, with the time; returns the input's own outcome. */
export type CoreStep = <I extends Input>(input: I) => Outputs[I['kind']];

export function coreLoop(core: NodeCore, timers: Timers, storage: Storage, release: (wake: WakeResult) => void): CoreStep {
  return <I extends Input>(input: I): Outputs[I['kind']] => {
    const step = core.step(input, timers.now());
    if (step.persist !== null) stage(storage, step.persist);
    if (step.wake !== null) release(step.wake);
    return step.out;
  };
}

/** Stages on disk what the core says changed: nothing else decides what to write. */
function stage(storage: Storage, persist: Persist): void {
  if (persist.reset !== undefined) storage.resetReplica(persist.reset.replica);
  if (persist.replica !== undefined) {
    const { changes, applied, lamport, base, collected } = persist.replica;
    storage.stage(changes, applied, lamport, base, collected);
  }
  if (persist.map !== undefined) storage.saveMap(persist.map);
}
