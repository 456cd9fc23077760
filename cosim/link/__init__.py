"""The cosim link: the wire protocol, the ZeroMQ transport, and guest memory over the link."""
