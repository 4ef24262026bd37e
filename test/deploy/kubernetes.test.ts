// deploy/kubernetes/, checked without a cluster: every manifest is a valid Kubernetes object by
// the API's schemas (kubernetes-models), with no field the API does not know (the schemas'
// validators accept those, and Kubernetes drops them silently: a misspelt probe would simply not
// exist); the manifests agree with each other (labels, Service names, ports, VIEW, Secret keys,
// the volume); and each pod's environment, as Kubernetes would build it, is accepted by the
// store's own loadConfig, so the store takes the StatefulSet's DNS names.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { StatefulSet, type IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { validate as statefulSetSchema } from 'kubernetes-models/_schemas/IoK8sApiAppsV1StatefulSet';
import { validate as pdbSchema } from 'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget';
import { validate as secretSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Secret';
import { validate as serviceSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Service';
import { loadConfig } from '../../src/node/config.ts';

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
const KUSTOMIZATION = 'kustomization.yaml';
/** Placeholder values: never applied (the kustomization leaves it out), but used here as the pods' secrets. */
const EXAMPLE_SECRET = 'secret.example.yaml';

type Json = Record<string, unknown>;

/** Per apiVersion/kind: the model whose validate() checks the schema, and the schema's own validator. */
const KINDS: Record<string, { check(data: Json): void; schema: (data: unknown) => boolean }> = {
  'apps/v1/StatefulSet': { check: (data) => new StatefulSet(data as unknown as IStatefulSet).validate(), schema: statefulSetSchema },
  'policy/v1/PodDisruptionBudget': { check: (data) => new PodDisruptionBudget(data as unknown as IPodDisruptionBudget).validate(), schema: pdbSchema },
  'v1/Secret': { check: (data) => new Secret(data as unknown as ISecret).validate(), schema: secretSchema },
  'v1/Service': { check: (data) => new Service(data as unknown as IService).validate(), schema: serviceSchema },
};

/**
 * Fields of `data` that the schema does not define, as JSON pointers. The schema's validator is run
 * on a proxy of the data that records which properties it reads at each object: a compiled schema
 * reads exactly the properties the schema defines, and enumerates the keys only of maps (labels,
 * resource quantities), whose keys are free. Any other key it never read is unknown to the API.
 */
function unknownFields(schema: (data: unknown) => boolean, data: unknown): string[] {
  const read = new WeakMap<object, Set<string>>();
  const enumerated = new WeakSet<object>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const known = proxies.get(value);
    if (known !== undefined) return known;
    const keys = new Set<string>();
    read.set(value, keys);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') keys.add(key);
        return wrap(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === 'string') keys.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        enumerated.add(target);
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  schema(wrap(data));
  const found: string[] = [];
  const walk = (value: unknown, path: string): void => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, `${path}/${i}`));
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      if (!enumerated.has(value) && !read.get(value)?.has(key)) found.push(`${path}/${key}`);
      else walk(child, `${path}/${key}`);
    }
  };
  walk(data, '');
  return found;
}

/** Everything wrong with one manifest by the API's schemas: type and format errors, then unknown fields. */
function schemaProblems(data: Json): string[] {
  const kind = KINDS[`${String(data.apiVersion)}/${String(data.kind)}`];
  if (kind === undefined) return [`${String(data.apiVersion)} ${String(data.kind)} is not a kind these manifests use`];
  const problems: string[] = [];
  try {
    kind.check(data);
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
  for (const field of unknownFields(kind.schema, data)) problems.push(`unknown field ${field}`);
  return problems;
}

interface Manifest {
  file: string;
  data: Json;
}

function manifestFiles(): string[] {
  return readdirSync(DIR)
    .filter((name) => name.endsWith('.yaml') || name.endsWith('.yml'))
    .sort();
}

function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of manifestFiles()) {
    if (file === KUSTOMIZATION) continue;
    for (const doc of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
      assert.deepEqual([...doc.errors, ...doc.warnings].map(String), [], `${file} parses as YAML`);
      const data: unknown = doc.toJS();
      if (data === null) continue;
      assert.ok(typeof data === 'object' && !Array.isArray(data), `${file}: each document is an object`);
      out.push({ file, data: data as Json });
    }
  }
  return out;
}

const manifests = loadManifests();

function only<T>(kind: string, where?: (m: Manifest) => boolean): { file: string; object: T } {
  const found = manifests.filter((m) => m.data.kind === kind && (where === undefined || where(m)));
  assert.equal(found.length, 1, `exactly one ${kind}${where ? ' of that kind' : ''}, found ${found.length}`);
  return { file: found[0]!.file, object: found[0]!.data as T };
}

function must<T>(value: T | null | undefined, what: string): T {
  assert.ok(value !== undefined && value !== null, `${what} is set`);
  return value;
}

const sts = only<IStatefulSet>('StatefulSet').object;
const stsSpec = must(sts.spec, 'StatefulSet spec');
const podSpec = must(stsSpec.template.spec, 'pod template spec');
const podLabels = must(stsSpec.template.metadata?.labels, 'pod template labels');
assert.equal(podSpec.containers.length, 1, 'one container per pod');
const container = podSpec.containers[0]!;
const containerPort = must(container.ports?.find((p) => p.name === 'http'), 'container port http');
const env = must(container.env, 'container env');
const headless = only<IService>('Service', (m) => (m.data.spec as Json | undefined)?.clusterIP === 'None').object;
const clientService = only<IService>('Service', (m) => (m.data.spec as Json | undefined)?.clusterIP !== 'None').object;
const pdb = only<IPodDisruptionBudget>('PodDisruptionBudget').object;
const exampleSecret = only<ISecret>('Secret');

function envValue(name: string): string {
  const entry = must(env.find((e) => e.name === name), `env ${name}`);
  return must(entry.value, `env ${name} value`);
}

/** The port a probe or Service names (by number, or by the container port's name) as a number. */
function resolvePort(port: number | string): number {
  if (typeof port === 'number') return port;
  return must(container.ports?.find((p) => p.name === port), `container port named ${port}`).containerPort;
}

function selects(selector: Record<string, string> | undefined, what: string): void {
  const labels = must(selector, `${what} selector`);
  assert.ok(Object.keys(labels).length > 0, `${what} selects by at least one label`);
  for (const [key, value] of Object.entries(labels)) assert.equal(podLabels[key], value, `${what} selects the pods: label ${key}`);
}

/** The secret values of the example Secret (stringData, or base64 data). */
function secretValue(name: string, key: string): string {
  const secret = exampleSecret.object;
  assert.equal(secret.metadata?.name, name, `the pods' Secret ${name} is the one ${EXAMPLE_SECRET} shows`);
  const text = secret.stringData?.[key] ?? (secret.data?.[key] !== undefined ? Buffer.from(secret.data[key], 'base64').toString('utf8') : undefined);
  return must(text, `key ${key} of Secret ${name} in ${EXAMPLE_SECRET}`);
}

/** The environment Kubernetes gives pod `ordinal`: fieldRefs, secretKeyRefs and $(VAR) references resolved. */
function podEnvironment(ordinal: number): Record<string, string> {
  const podName = `${sts.metadata?.name}-${ordinal}`;
  const out: Record<string, string> = {};
  for (const entry of env) {
    if (entry.value !== undefined) {
      // $(VAR) expands to a variable defined earlier in the list; anything else stays as written.
      out[entry.name] = entry.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => out[name] ?? whole);
    } else if (entry.valueFrom?.fieldRef !== undefined) {
      assert.equal(entry.valueFrom.fieldRef.fieldPath, 'metadata.name', `env ${entry.name}: the only field used is the pod name`);
      out[entry.name] = podName;
    } else if (entry.valueFrom?.secretKeyRef !== undefined) {
      const ref = entry.valueFrom.secretKeyRef;
      out[entry.name] = secretValue(must(ref.name, `env ${entry.name} Secret name`), ref.key);
    } else {
      assert.fail(`env ${entry.name}: a value, a fieldRef or a secretKeyRef`);
    }
  }
  return out;
}

test('every manifest is valid by the Kubernetes API schemas, with no unknown field', () => {
  assert.ok(manifests.length >= 5, `found ${manifests.length} manifests`);
  for (const { file, data } of manifests) {
    assert.deepEqual(schemaProblems(data), [], `${file}: ${String(data.kind)} ${String((data.metadata as Json | undefined)?.name)}`);
  }
});

test('the schema check catches misspelt fields at every level, and wrong types', () => {
  const copy = (): Json => structuredClone(sts) as unknown as Json;
  const cases: Array<{ what: string; change(s: IStatefulSet): void; expect: RegExp }> = [
    { what: 'a misspelt container field', change: (s) => Object.assign(s.spec!.template.spec!.containers[0]!, { readinesProbe: { httpGet: { path: '/status/ready', port: 8090 } } }), expect: /unknown field \/spec\/template\/spec\/containers\/0\/readinesProbe$/ },
    { what: 'a misspelt field inside a probe', change: (s) => Object.assign(s.spec!.template.spec!.containers[0]!.livenessProbe!.httpGet!, { pathh: '/status' }), expect: /unknown field \/spec\/template\/spec\/containers\/0\/livenessProbe\/httpGet\/pathh$/ },
    { what: 'a misspelt StatefulSet field', change: (s) => Object.assign(s.spec!, { serviceNme: 'kvs' }), expect: /unknown field \/spec\/serviceNme$/ },
    { what: 'a misspelt pod field', change: (s) => Object.assign(s.spec!.template.spec!, { terminationGracePeriod: 10 }), expect: /unknown field \/spec\/template\/spec\/terminationGracePeriod$/ },
    { what: 'a misspelt volume claim field', change: (s) => Object.assign(s.spec!.volumeClaimTemplates![0]!.spec!, { accessMode: ['ReadWriteOnce'] }), expect: /unknown field \/spec\/volumeClaimTemplates\/0\/spec\/accessMode$/ },
    { what: 'a misspelt security context field', change: (s) => Object.assign(s.spec!.template.spec!.containers[0]!.securityContext!, { readOnlyRootFileSystem: true }), expect: /unknown field .*securityContext\/readOnlyRootFileSystem$/ },
    { what: 'a number as a string', change: (s) => Object.assign(s.spec!, { replicas: '6' }), expect: /replicas.*integer/ },
    { what: 'a value outside an enum', change: (s) => Object.assign(s.spec!, { podManagementPolicy: 'parallel' }), expect: /podManagementPolicy/ },
    { what: 'an object where a list belongs', change: (s) => Object.assign(s.spec!.template.spec!.containers[0]!, { env: { SHARD_COUNT: '2' } }), expect: /env.*array/ },
  ];
  for (const { what, change, expect } of cases) {
    const broken = copy();
    change(broken as unknown as IStatefulSet);
    const problems = schemaProblems(broken);
    assert.ok(problems.some((p) => expect.test(p)), `${what}: caught (${JSON.stringify(problems)})`);
  }
  const service = structuredClone(headless) as unknown as Json;
  Object.assign(service.spec as Json, { publishNotReadyAdresses: true });
  assert.ok(schemaProblems(service).includes('unknown field /spec/publishNotReadyAdresses'), 'a misspelt Service field: caught');
  const budget = structuredClone(pdb) as unknown as Json;
  Object.assign(budget.spec as Json, { maxUnavailabe: 1 });
  assert.ok(schemaProblems(budget).includes('unknown field /spec/maxUnavailabe'), 'a misspelt PodDisruptionBudget field: caught');
  // Maps take any key: labels are not unknown fields.
  const labelled = copy();
  Object.assign((labelled.metadata as Json).labels as Json, { 'example.com/anything': 'x' });
  assert.deepEqual(schemaProblems(labelled), [], 'an extra label is not an unknown field');
});

test('the kustomization lists every manifest but the example Secret, and nothing else', () => {
  const kustomization = parse(readFileSync(join(DIR, KUSTOMIZATION), 'utf8')) as Json;
  assert.equal(kustomization.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  assert.equal(kustomization.kind, 'Kustomization');
  // Besides the resources, only what a deployer sets for their cluster (README, "Kubernetes"): the
  // image's registry and a namespace; anything else could change what the checks below looked at.
  const extra = Object.keys(kustomization).filter((key) => !['apiVersion', 'kind', 'resources', 'images', 'namespace'].includes(key));
  assert.deepEqual(extra, [], 'only the fields this check understands');
  const listed = (kustomization.resources as string[]).slice().sort();
  const expected = manifestFiles().filter((f) => f !== KUSTOMIZATION && f !== EXAMPLE_SECRET);
  assert.deepEqual(listed, expected);
  assert.ok(!listed.includes(EXAMPLE_SECRET), 'the placeholder secrets are never applied');
});

test('the Services, the StatefulSet and the PodDisruptionBudget select the same pods', () => {
  selects(stsSpec.selector.matchLabels, 'the StatefulSet');
  selects(headless.spec?.selector, 'the headless Service');
  selects(clientService.spec?.selector, 'the client Service');
  selects(pdb.spec?.selector?.matchLabels, 'the PodDisruptionBudget');
  assert.equal(stsSpec.serviceName, headless.metadata?.name, 'serviceName is the headless Service');
  assert.equal(headless.spec?.publishNotReadyAddresses, true, 'peers resolve each other before they are ready');
  assert.notEqual(clientService.spec?.publishNotReadyAddresses, true, 'clients reach only ready nodes');
  for (const service of [headless, clientService]) {
    const ports = must(service.spec?.ports, `${service.metadata?.name} ports`);
    assert.equal(ports.length, 1);
    assert.equal(ports[0]!.port, containerPort.containerPort, `${service.metadata?.name} port`);
    assert.equal(resolvePort(must(ports[0]!.targetPort, 'targetPort')), containerPort.containerPort, `${service.metadata?.name} targets the node's port`);
  }
});

test('VIEW names every pod of the StatefulSet by its DNS name, and there are enough for SHARD_COUNT', () => {
  const replicas = must(stsSpec.replicas, 'replicas');
  const name = must(sts.metadata?.name, 'StatefulSet name');
  const expected = Array.from({ length: replicas }, (_, i) => `${name}-${i}.${stsSpec.serviceName}:${containerPort.containerPort}`);
  assert.deepEqual(envValue('VIEW').split(','), expected);
  assert.equal(envValue('SOCKET_ADDRESS'), `$(POD_NAME).${stsSpec.serviceName}:${containerPort.containerPort}`);
  const shardCount = Number(envValue('SHARD_COUNT'));
  assert.ok(Number.isSafeInteger(shardCount) && shardCount >= 1, 'SHARD_COUNT is a positive integer');
  assert.ok(2 * shardCount <= replicas, `2 nodes per shard: 2 * ${shardCount} <= ${replicas}`);
  // OrderedReady would start kvs-1 only once kvs-0 is ready, and kvs-0 is ready only with its peers.
  assert.equal(stsSpec.podManagementPolicy, 'Parallel');
  // Evicting this many at once leaves every shard (round-robin: at least floor(replicas / shards) members) a member.
  const maxUnavailable = must(pdb.spec?.maxUnavailable, 'maxUnavailable');
  assert.equal(typeof maxUnavailable, 'number');
  assert.ok((maxUnavailable as number) >= 1 && (maxUnavailable as number) < Math.floor(replicas / shardCount), `maxUnavailable ${maxUnavailable}`);
});

test('the probes ask the node itself: /status/ready for readiness, /status for liveness', () => {
  const readiness = must(container.readinessProbe?.httpGet, 'readinessProbe httpGet');
  const liveness = must(container.livenessProbe?.httpGet, 'livenessProbe httpGet');
  assert.equal(readiness.path, '/status/ready');
  assert.equal(liveness.path, '/status');
  assert.equal(resolvePort(readiness.port), containerPort.containerPort, 'readiness probe port');
  assert.equal(resolvePort(liveness.port), containerPort.containerPort, 'liveness probe port');
  // Kubernetes' default timeout is 1 s; a node answering slowly under load is still alive.
  assert.ok((container.livenessProbe?.failureThreshold ?? 3) * (container.livenessProbe?.periodSeconds ?? 10) >= 30, 'liveness gives a slow node at least 30 s');
});

test('every Secret key the pods read exists in the example Secret', () => {
  const refs = env.flatMap((e) => (e.valueFrom?.secretKeyRef ? [{ env: e.name, ...e.valueFrom.secretKeyRef }] : []));
  assert.deepEqual(refs.map((r) => r.env).sort(), ['ADMIN_TOKEN', 'CLUSTER_SECRET'], 'both secrets come from the Secret, not from the manifest');
  for (const ref of refs) secretValue(must(ref.name, `${ref.env} Secret name`), ref.key);
});

test('DATA_DIR lies on the volume claim, and the rest of the root file system may be read-only', () => {
  const claims = must(stsSpec.volumeClaimTemplates, 'volumeClaimTemplates');
  assert.equal(claims.length, 1);
  const claimName = must(claims[0]!.metadata?.name, 'volume claim name');
  const mount = must(container.volumeMounts?.find((m) => m.name === claimName), `mount of volume ${claimName}`);
  const dataDir = envValue('DATA_DIR');
  assert.ok(isAbsolute(dataDir), 'DATA_DIR is absolute');
  // Inside the mount, not the mount point itself: a data directory found unusable is renamed aside
  // next to itself (src/node/storage.ts), which a mount point cannot be; its parent must be on the volume.
  const parent = relative(mount.mountPath, dirname(dataDir));
  assert.ok(!parent.startsWith('..') && !isAbsolute(parent), `${dataDir} and its parent are on the volume mounted at ${mount.mountPath}`);
  assert.notEqual(relative(mount.mountPath, dataDir), '', 'DATA_DIR is not the mount point itself');
  assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
  // SQLite puts its temporary files in /tmp: with a read-only root it needs a volume there.
  const tmp = must(container.volumeMounts?.find((m) => m.mountPath === '/tmp'), 'a writable /tmp');
  assert.ok(podSpec.volumes?.some((v) => v.name === tmp.name && v.emptyDir !== undefined), '/tmp is an emptyDir');
  assert.equal(podSpec.securityContext?.runAsNonRoot, true);
  assert.equal(podSpec.securityContext?.runAsUser, 1000, "the image's user node");
  assert.equal(podSpec.securityContext?.fsGroup, 1000, 'the volume writable by that user');
  assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
  assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
  // The node bounds its own stop at 3 s (src/node/main.ts); SIGKILL must not come first.
  assert.ok((podSpec.terminationGracePeriodSeconds ?? 30) > 3, 'terminationGracePeriodSeconds leaves room for a graceful stop');
});

test("each pod's environment passes the store's own configuration check, with its DNS names", () => {
  const replicas = must(stsSpec.replicas, 'replicas');
  const view = envValue('VIEW').split(',');
  for (let i = 0; i < replicas; i++) {
    const config = loadConfig(podEnvironment(i));
    const self = `${sts.metadata?.name}-${i}.${stsSpec.serviceName}:${containerPort.containerPort}`;
    assert.equal(config.address, self, `pod ${i}: SOCKET_ADDRESS`);
    assert.deepEqual([...config.view].sort(), [...view].sort(), `pod ${i}: VIEW, itself included`);
    assert.equal(config.shardCount, Number(envValue('SHARD_COUNT')), `pod ${i}: SHARD_COUNT`);
    assert.equal(config.port, containerPort.containerPort, `pod ${i}: listens on the container port`);
    assert.equal(config.listenHost, '0.0.0.0', `pod ${i}: listens on the pod's IP, not loopback only`);
    assert.equal(config.dataDir, envValue('DATA_DIR'), `pod ${i}: DATA_DIR`);
    assert.deepEqual(config.clusterSecrets, [secretValue('kvs', 'cluster-secret')], `pod ${i}: CLUSTER_SECRET`);
    assert.equal(config.adminToken, secretValue('kvs', 'admin-token'), `pod ${i}: ADMIN_TOKEN`);
  }
  // A pod added by raising replicas gets the same VIEW (which does not name it) and is accepted too.
  const added = loadConfig(podEnvironment(replicas));
  assert.equal(added.address, `${sts.metadata?.name}-${replicas}.${stsSpec.serviceName}:${containerPort.containerPort}`);
  assert.equal(added.view.length, replicas + 1, 'the new pod counts itself in its view');
});
