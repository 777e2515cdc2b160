-- Whether an MCP server's URL was at a private, loopback or link-local address when it was registered, which only
-- admins may do (or any editor when agent_http_allow_private is set). A server registered at a public address is
-- checked again, and connected to the checked address, every time it is reached: a DNS answer that changes later
-- cannot turn it into a way into this machine's network. Servers registered before this column keep working as
-- they did.
ALTER TABLE mcp_servers ADD COLUMN private_url INTEGER NOT NULL DEFAULT 0;
UPDATE mcp_servers SET private_url = 1 WHERE url IS NOT NULL;
