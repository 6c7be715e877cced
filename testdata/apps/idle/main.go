// Command idle is a Go program none of the agent's probes applies to: it
// uses neither net/http, database/sql nor gRPC, and sleeps.
package main

import "time"

func main() { time.Sleep(time.Hour) }
