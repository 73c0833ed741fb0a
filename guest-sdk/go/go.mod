module github.com/switchyard-lb/switchyard/guest-sdk/go

go 1.24
