module github.com/rbdgw/rbdgw

go 1.26
