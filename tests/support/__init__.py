"""Helpers of the test suite (no fixtures: those are in tests/conftest.py). db: throwaway
VICIdial databases; cli: the CLI in-process and its JSON summary; proc: the CLI as a real
process; oracle: the byte-exact checks of the rows; api: calls to `serve`; bodies: generated
API request bodies; schema: the published OpenAPI document as a judge of bodies and answers."""
