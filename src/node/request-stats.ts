// Key-value requests this node answered since it started, for /status and the dashboard's
// throughput and latency (which take differences between two reads).

export class RequestStats {
  private total = 0;
  private errors = 0;
  private latencyMsSum = 0;

  /** One /kvs request answered with `status` after `ms`; a 5xx is an error. */
  record(status: number, ms: number): void {
    this.total++;
    if (status >= 500) this.errors++;
    this.latencyMsSum += ms;
  }

  snapshot(): { total: number; errors: number; latencyMsSum: number } {
    return { total: this.total, errors: this.errors, latencyMsSum: Math.round(this.latencyMsSum * 1000) / 1000 };
  }
}
