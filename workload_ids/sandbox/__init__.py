"""Local clouds for the demo, the sandbox command and the tests (moto for AWS)."""
