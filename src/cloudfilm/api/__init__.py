"""HTTP routers: translate HTTP to service calls and back."""
