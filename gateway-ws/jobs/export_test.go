package jobs

// MethodOf is the HTTP method the queue calls function with.
func (c Config) MethodOf(function string) string { return c.method(function) }

// DeadKey is the dead-letter stream's key.
func (q *Queue) DeadKey() string { return q.deadKey() }

// StreamKey is function's stream's key.
func (q *Queue) StreamKey(function string) string { return q.streamKey(function) }
