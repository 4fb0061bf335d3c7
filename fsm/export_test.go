package fsm

import "os"

var readFile = os.ReadFile
