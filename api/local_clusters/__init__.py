"""Registry clusters on this one machine, for development, tests, benchmarks and soaks: peers as
`registry serve` processes on 127.0.0.1 (`loopback`), or in network namespaces whose links can be
cut (`namespaces`, `netns`); started, waited for and stopped by pid."""
