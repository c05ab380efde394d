"""Local Azure for the sandbox and the tests: an ARM emulator the real management SDK clients talk to."""
