"""Identity and access for every API family: keys, principals, roles, projects, secrets, rate limits, audit."""
