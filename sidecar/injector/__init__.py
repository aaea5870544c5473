"""The injector: the offline `inject` command and the admission webhook, over `plan_patch`."""
