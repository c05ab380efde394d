"""What every emulator shares: one clock, one fault injector, the HTTP and gRPC server base."""
