package grpcapi

// TurnHealthNotServing turns every health status of s to NOT_SERVING, as
// Shutdown does first.
func TurnHealthNotServing(s *Server) { s.health.Shutdown() }

// Drained is closed once Shutdown has closed every follower.
func Drained(s *Server) <-chan struct{} { return s.drained.Done() }
