// The lab by hand: `node harness/lab/main.ts [--nodes 4] [--shards 2] [--log-level info]` (as root)
// starts a lab cluster and opens a REPL with `lab` (see lab.ts) and `nodes` (its addresses):
//
//   > await lab.partition([[nodes[0]], nodes.slice(1)])
//   > await lab.http('PUT', nodes[0], '/kvs/x', { value: 1, 'causal-metadata': null })
//   > await lab.heal(); await lab.kill(nodes[1]); await lab.restart(nodes[1])
//   > lab.describeFaults(); lab.logTail(nodes[0])
//
// The nodes are also reachable from other shells of this machine (curl http://10.10.<n>.2:8090/...).
// Ctrl-D (or .exit) removes everything it created.

import { start } from 'node:repl';
import { parseArgs } from 'node:util';
import { Lab } from './lab.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '4' },
    shards: { type: 'string', default: '0' },
    'log-level': { type: 'string', default: 'info' },
  },
});

const lab = await Lab.create({ nodeCount: Number(values.nodes), shardCount: Number(values.shards), logLevel: values['log-level'] });
const nodes = lab.addresses();
process.stdout.write(
  `lab ${lab.prefix}: ${nodes.length} nodes ready: ${nodes.join(' ')}\n` +
    `logs: ${lab.logDir}\nnamespaces: ${nodes.map((n) => lab.namespaceOf(n)).join(' ')}\n` +
    'in the REPL: lab.partition([[a], [b, c]]), lab.partitionOneWay([a], [b]), lab.disconnect(a), lab.reconnect(a),\n' +
    '  lab.addLatency(a, b, 200), lab.heal(), lab.kill(a), lab.stop(a), lab.start(a), lab.restart(a), lab.addNode(),\n' +
    "  lab.http('GET', a, '/view'), lab.logTail(a), lab.describeFaults()   (a, b, c: nodes[0], nodes[1], ...)\n",
);
const repl = start({ prompt: 'lab> ' });
Object.assign(repl.context, { lab, nodes });
repl.on('exit', () => {
  void lab.close().then(() => process.exit(0));
});
