module github.com/rbdgw/rbdgw

go 1.26.0

require (
	github.com/ceph/go-ceph v0.34.0
	github.com/spf13/cobra v1.10.1
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)
