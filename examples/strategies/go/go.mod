module canary

go 1.24

require github.com/switchyard-lb/switchyard/guest-sdk/go v0.0.0

replace github.com/switchyard-lb/switchyard/guest-sdk/go => ../../../guest-sdk/go
