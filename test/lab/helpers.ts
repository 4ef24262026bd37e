// Shared by the lab's scenario tests: skip cleanly where the lab cannot run (not root, no `ip
// netns`, no iptables), one lab per describe with cleanup in `after`, node logs on failure.

import { after, afterEach, before } from 'node:test';
import { Lab, labUnavailableReason } from '../../harness/lab/lab.ts';
import type { LabOptions } from '../../harness/lab/lab.ts';

/** Why these tests are skipped here, or undefined (CI runs them as root). */
export const skipReason: string | undefined = labUnavailableReason();

/**
 * Creates a lab before the describe's tests and closes it after them, even when a test failed;
 * on a failed test prints every node's recent log lines and keeps the log directory.
 */
export function useLab(options: LabOptions): () => Lab {
  let lab: Lab | undefined;
  let failed = false;
  before(async () => {
    lab = await Lab.create(options);
  });
  afterEach((t) => {
    const passed = (t as unknown as { passed?: boolean }).passed;
    if (passed === false && lab !== undefined) {
      failed = true;
      console.error(
        `\n##### test failed: ${t.name}; faults in place: ${lab.describeFaults()}; node logs in ${lab.logDir} #####\n` +
          `${lab.logs(40)}\n##### end of node logs #####`,
      );
    }
  });
  after(async () => {
    await lab?.close({ removeLogs: !failed });
  });
  return () => {
    if (lab === undefined) throw new Error('the lab was not created (see the before hook)');
    return lab;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
