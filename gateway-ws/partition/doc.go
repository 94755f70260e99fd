// Package partition holds tests only: a whole tidings stack with Redis or
// PostgreSQL in a network namespace, cut off the network (every packet
// dropped) at a chosen moment and healed again. They check that nothing
// stays unfinished, the invariant holds, and publishing and fresh socket
// joins are back within seconds of the heal. They need root; see
// testenv.NewPartition.
package partition
