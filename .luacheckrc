-- luacheck: the scripts run in uidcast's sandbox (Lua 5.4); the specs under busted.
std = "lua54"
max_line_length = 120
files["spec/"] = { std = "+busted" }
