// Command rbdgw is the iSCSI gateway daemon: `rbdgw serve` runs a gateway
// from a configuration file, `rbdgw demo` a throw-away one with a sparse
// 1 GiB LUN.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(Execute(context.Background(), os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
