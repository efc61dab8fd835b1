"""Several SFU nodes as one service: the node registry, the room directory, placement, and
how one node reaches another (docs/architecture.md, "Several nodes").

Without Redis a node is a cluster of one (`LocalDirectory`); with `REDIS_URL`, every node that
shares the Redis registers there (`RedisDirectory`). Redis holds nothing only it knows: each
node re-publishes itself and its rooms at every heartbeat."""
