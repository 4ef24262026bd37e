# One store node. Configure it with SOCKET_ADDRESS, VIEW and (for the nodes that start a sharded
# store) SHARD_COUNT; see shared/spec/api.md and deploy/compose.yaml.
#   docker build -t kvs .
#   docker run --init -e SOCKET_ADDRESS=10.10.0.2:8090 -e VIEW=10.10.0.2:8090,... kvs
FROM node:24-bookworm-slim

WORKDIR /app

# Dependencies first, so editing the source does not reinstall them. devDependencies are needed:
# the pinned Node 24 that runs the store (node_modules/.bin/node) is one of them.
COPY package.json package-lock.json ./
RUN npm ci

COPY . .

EXPOSE 8090

# The same command starts a node from the repository root of a checkout after `npm ci`.
CMD ["node_modules/.bin/node", "src/node/main.ts"]
