package follower

import "github.com/tablefsm/tablefsm/logpos"

// TermOptions are the options a term was fenced with.
type TermOptions struct {
	EnableNotifications bool
}

// replication is one attached replication stream.
type replication struct{}

// installation is one attached snapshot install.
type installation struct{}

var _ logpos.Term
