"""Local GCP for the demo, ``workload-ids sandbox`` and the tests: IAM Admin over gRPC,
Resource Manager project IAM policies over REST, Secret Manager over gRPC (and REST),
each served with the client libraries' own message types and enforcing GCP's rules."""
