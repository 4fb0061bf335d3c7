package grpcapi

// TurnHealthNotServing turns every health status of s to NOT_SERVING, as
// Shutdown does first.
func TurnHealthNotServing(s *Server) { s.health.Shutdown() }
