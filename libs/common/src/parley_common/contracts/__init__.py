"""Every message that crosses a process boundary, as msgspec Structs.

HTTP bodies use the seed APIs' own names and shapes; the same types travel on the bus and describe the
OpenAPI document. No service imports another service's code: they share only these contracts.
"""
