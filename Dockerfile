# One store node. Configure it with SOCKET_ADDRESS, VIEW and (for the nodes that start a sharded
# store) SHARD_COUNT, as README's "Configuration" says; deploy/compose.yaml runs six of them and
# deploy/kubernetes/ runs them as a StatefulSet.
#   docker build -t kvs .
#   docker run --init -e SOCKET_ADDRESS=10.10.0.2:8090 -e VIEW=10.10.0.2:8090,... kvs
# Node 24 runs the TypeScript source as it is (type stripping), so there is nothing to compile.

# ---- stage 1: the production dependencies, exactly as the lock file has them ---------------------
FROM node:24.21.0-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No devDependencies (the test tools, TypeScript, the pinned Node of the repository), no install scripts.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- stage 2: what runs: the image's Node 24, those dependencies and the source ----------------
FROM node:24.21.0-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
# The command below names node_modules/.bin/node, which in a checkout is the pinned Node 24 (a
# devDependency); here the image's own Node 24 stands in for it. /data is for DATA_DIR, owned by
# the user the node runs as.
RUN mkdir -p node_modules/.bin /data \
 && ln -s "$(command -v node)" node_modules/.bin/node \
 && chown node:node /data
# The image's unprivileged user (uid 1000); the node needs no privilege (its port is above 1023).
USER node
EXPOSE 8090
# Alive: GET /status on the node's own port answers 200 (src/node/healthcheck.ts). Not readiness: a
# node copying its shard is healthy, only not ready (GET /status/ready says so, for load balancers).
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["node_modules/.bin/node", "src/node/healthcheck.ts"]
# The same command starts a node from the repository root of a checkout after `npm ci`. The flag caps
# V8's young generation (about 100 MB of RSS less per busy node; see README, "Memory").
CMD ["node_modules/.bin/node", "--max-semi-space-size=16", "src/node/main.ts"]
