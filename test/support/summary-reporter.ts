/**
 * One plain closing line after the run, `tests: N passed, N failed, N skipped`, next to vitest's own summary:
 * a line any CI log reader (or grep) understands without knowing vitest's format. A test file that failed outside
 * its tests (it did not load, a hook threw) and errors no test caught are counted on the same line: "0 failed"
 * alone would hide a run that exits non-zero.
 */
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = []): void {
    const count = { passed: 0, failed: 0, skipped: 0, pending: 0 };
    let brokenFiles = 0;
    for (const module of testModules) {
      let failedTests = 0;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        count[state]++;
        if (state === 'failed') failedTests++;
      }
      if (failedTests === 0 && (module.state() === 'failed' || module.errors().length > 0)) brokenFiles++;
    }
    const extra = [
      brokenFiles > 0 ? `${brokenFiles} test file(s) failed outside their tests` : '',
      unhandledErrors.length > 0 ? `${unhandledErrors.length} unhandled error(s)` : '',
    ].filter((s) => s !== '');
    const tail = extra.length > 0 ? `; ${extra.join(', ')} (see above)` : '';
    process.stdout.write(`\ntests: ${count.passed} passed, ${count.failed} failed, ${count.skipped + count.pending} skipped${tail}\n`);
  }
}
