"""The local development stack: every service, Envoy and a demo model as local processes
(`make up`), development certificates, and the demo. Not part of any image."""
