"""The one path to Okta: session, timeouts, retries, rate limits, circuit breaker, Link headers, error mapping."""
