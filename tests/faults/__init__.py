"""The fault suite: each test injects one fault into a running pipeline and ends with
``tests.audit.audit`` (nothing lost, nothing sent twice, everything settled)."""
