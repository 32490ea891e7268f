"""Multi-CPMS routing: upstreams, routes, legs and outboxes."""
