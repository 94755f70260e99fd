package jobs

// MethodOf is the HTTP method the queue calls function with.
func (c Config) MethodOf(function string) string { return c.method(function) }
