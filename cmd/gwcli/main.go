// Command gwcli is rbdgw's admin shell and one-shot command line, a
// client of the gateways' management REST API, in ceph-iscsi's gwcli
// layout: `gwcli` opens the shell, `gwcli ls` or
// `gwcli /disks create pool=rbd image=disk_1 size=90G` run one command.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(Execute(context.Background(), os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
