package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// envOf returns an environment lookup over m, so tests never read the real environment.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// configFile writes a YAML config file and returns its path.
func configFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "toolgate.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, args []string, env map[string]string) *settings {
	t.Helper()
	s, err := loadSettings(args, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("loadSettings(%q, %v): %v", args, env, err)
	}
	return s
}

// settingValue formats the field of s behind flag name as the flag would print it. (Registering
// flags writes their defaults into the fields, so s itself is never given to newFlagSet.)
func settingValue(t *testing.T, s *settings, name string) string {
	t.Helper()
	var scratch settings
	f := newFlagSet(&scratch, io.Discard).Lookup(name)
	if f == nil {
		t.Fatalf("no flag --%s", name)
	}
	ptr := reflect.ValueOf(f.Value).Pointer()
	sv := reflect.ValueOf(&scratch).Elem()
	for i := range sv.NumField() {
		if sv.Field(i).Addr().Pointer() == ptr {
			sv.Field(i).Set(reflect.ValueOf(s).Elem().Field(i))
			return f.Value.String()
		}
	}
	t.Fatalf("flag --%s is not a settings field", name)
	return ""
}

// TestSettingsDefaults: no configuration at all is the embedded development default, and --dev
// is the same configuration.
func TestSettingsDefaults(t *testing.T) {
	s := mustLoad(t, nil, nil)
	want := map[string]bool{
		"Domain":                s.Domain == "toolgate.localhost",
		"TunnelDomain":          s.TunnelDomain == "toolgate.localhost",
		"HTTPSListen":           s.HTTPSListen == "127.0.0.1:8443",
		"SSHListen":             s.SSHListen == "127.0.0.1:2222",
		"DataDir":               s.DataDir == "./toolgate-data",
		"AdminListen loopback":  strings.HasPrefix(s.AdminListen, "127.0.0.1:"),
		"HTTPListen off":        s.HTTPListen == "",
		"AuthorizedKeys unset":  s.AuthorizedKeys == "",
		"no ACME":               !s.useACME(),
		"LogFormat":             s.LogFormat == "json",
		"LogLevel":              s.LogLevel == "info",
		"Config":                s.Config == "",
		"Dev false (implicit)":  !s.Dev,
		"positive timeouts":     s.SSHHandshakeTimeout > 0 && s.ReadHeaderTimeout > 0 && s.ResponseHeaderTimeout > 0,
		"TunnelIdle < 5s":       s.TunnelIdleTimeout > 0 && s.TunnelIdleTimeout < 5*time.Second,
		"limits at least one":   s.MaxConnsPerOwner >= 1 && s.MaxTunnelsPerUser >= 1 && s.SSHKeepaliveCount >= 1,
		"public ports unset":    s.PublicHTTPSPort == 0 && s.PublicSSHPort == 0,
		"no extra origins/name": len(s.AllowedOrigins) == 0 && len(s.ReservedNames) == 0,
		"no OIDC":               s.OIDCIssuer == "" && s.OIDCClientID == "" && s.oidcSecret == "" && len(s.OIDCScopes) == 0,
		"OIDC groups claim":     s.OIDCGroupsClaim == "groups" && !s.OIDCProvisionedOnly && len(s.OIDCAllowedDomains) == 0,
	}
	for what, ok := range want {
		if !ok {
			t.Errorf("default %s wrong: %+v", what, *s)
		}
	}

	dev := mustLoad(t, []string{"--dev"}, nil)
	if !dev.Dev {
		t.Fatal("--dev did not set Dev")
	}
	dev.Dev = false
	if !reflect.DeepEqual(dev, s) {
		t.Errorf("--dev differs from no configuration:\n--dev: %+v\nnone:  %+v", *dev, *s)
	}
	// An empty file, or one of only comments, changes nothing.
	for _, content := range []string{"", "\n\n", "# nothing here\n"} {
		e := mustLoad(t, []string{"--config", configFile(t, content)}, nil)
		e.Config = ""
		if !reflect.DeepEqual(e, s) {
			t.Errorf("config file %q changed settings:\n%+v\nwant %+v", content, *e, *s)
		}
	}
}

// TestSettingsPrecedence: default < file < environment < flag, for the same setting, for a
// string, a duration, an int, a bool and a list setting.
func TestSettingsPrecedence(t *testing.T) {
	type src struct{ file, env, flag string }
	for _, tc := range []struct {
		setting string
		vals    src // "" means not given at that level
		want    string
		get     func(*settings) string
	}{
		{"ssh-listen", src{}, "127.0.0.1:2222", nil},
		{"ssh-listen", src{file: "127.0.0.1:1001"}, "127.0.0.1:1001", nil},
		{"ssh-listen", src{env: "127.0.0.1:1002"}, "127.0.0.1:1002", nil},
		{"ssh-listen", src{flag: "127.0.0.1:1003"}, "127.0.0.1:1003", nil},
		{"ssh-listen", src{file: "127.0.0.1:1001", env: "127.0.0.1:1002"}, "127.0.0.1:1002", nil},
		{"ssh-listen", src{file: "127.0.0.1:1001", flag: "127.0.0.1:1003"}, "127.0.0.1:1003", nil},
		{"ssh-listen", src{env: "127.0.0.1:1002", flag: "127.0.0.1:1003"}, "127.0.0.1:1003", nil},
		{"ssh-listen", src{file: "127.0.0.1:1001", env: "127.0.0.1:1002", flag: "127.0.0.1:1003"}, "127.0.0.1:1003", nil},
		{"ssh-handshake-timeout", src{file: "1s", env: "2s"}, "2s", nil},
		{"ssh-handshake-timeout", src{file: "1s", env: "2s", flag: "3s"}, "3s", nil},
		{"max-tunnels-per-user", src{file: "4", env: "5"}, "5", nil},
		{"max-tunnels-per-user", src{file: "4", env: "5", flag: "6"}, "6", nil},
		{"dev", src{file: "true", env: "false"}, "false", nil},
		{"dev", src{file: "false", env: "false", flag: "true"}, "true", nil},
		// A list given at a higher level replaces the lower one's, never appends to it.
		{"reserved-names", src{file: "a,b", env: "c"}, "c", nil},
		{"reserved-names", src{file: "a,b", env: "c", flag: "d,e"}, "d,e", nil},
	} {
		t.Run(tc.setting+"/"+strings.Join(slices.DeleteFunc([]string{"file=" + tc.vals.file, "env=" + tc.vals.env, "flag=" + tc.vals.flag},
			func(s string) bool { return strings.HasSuffix(s, "=") }), ","), func(t *testing.T) {
			var args []string
			env := map[string]string{}
			if tc.vals.file != "" {
				args = append(args, "--config", configFile(t, tc.setting+": "+tc.vals.file+"\n"))
			}
			if tc.vals.env != "" {
				env[envName(tc.setting)] = tc.vals.env
			}
			if tc.vals.flag != "" {
				args = append(args, "--"+tc.setting+"="+tc.vals.flag)
			}
			s := mustLoad(t, args, env)
			if got := settingValue(t, s, tc.setting); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.setting, got, tc.want)
			}
		})
	}
}

// TestSettingsConfigFromEnv: TOOLGATE_CONFIG names the file when --config is not given; the
// flag wins over it.
func TestSettingsConfigFromEnv(t *testing.T) {
	a := configFile(t, "domain: a.localhost\n")
	b := configFile(t, "domain: b.localhost\n")
	s := mustLoad(t, nil, map[string]string{"TOOLGATE_CONFIG": a})
	if s.Domain != "a.localhost" || s.Config != a {
		t.Errorf("TOOLGATE_CONFIG: domain %q config %q", s.Domain, s.Config)
	}
	s = mustLoad(t, []string{"--config", b}, map[string]string{"TOOLGATE_CONFIG": a})
	if s.Domain != "b.localhost" || s.Config != b {
		t.Errorf("--config over TOOLGATE_CONFIG: domain %q config %q", s.Domain, s.Config)
	}
}

// TestSettingsEverySource: every flag is also a TOOLGATE_* variable and a YAML key, with the
// same effect. A new flag without a value here fails the test, so none is forgotten.
func TestSettingsEverySource(t *testing.T) {
	// A literal secret would differ by source (only file and flag literals are warned about),
	// so the secret comes from a file.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oidc := []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "toolgate", "--oidc-client-secret", "file:" + secretFile}
	values := map[string]struct {
		val   string
		extra []string // flags every variant also needs to be valid
	}{
		"dev":                      {val: "true"},
		"data-dir":                 {val: "/tmp/tg"},
		"domain":                   {val: "other.localhost"},
		"tunnel-domain":            {val: "t.localhost"},
		"https-listen":             {val: "127.0.0.1:1443"},
		"public-https-port":        {val: "443"},
		"http-listen":              {val: "127.0.0.1:1080"},
		"ssh-listen":               {val: "0.0.0.0:22"},
		"public-ssh-port":          {val: "22"},
		"admin-listen":             {val: ""},
		"authorized-keys":          {val: "/etc/toolgate/keys"},
		"acme-ca":                  {val: "https://ca.test/dir", extra: []string{"--acme-email", "ops@ca.test"}},
		"acme-email":               {val: "ops@ca.test"},
		"acme-ca-roots":            {val: "/etc/toolgate/roots.pem"},
		"ssh-handshake-timeout":    {val: "3s"},
		"ssh-keepalive-interval":   {val: "1m30s"},
		"ssh-keepalive-count":      {val: "7"},
		"ssh-ciphers":              {val: "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"},
		"max-connections-per-user": {val: "2"},
		"max-tunnels-per-user":     {val: "3"},
		"max-connections-per-ip":   {val: "40"},
		"rate-per-ip":              {val: "12.5"},
		"rate-per-user":            {val: "0"},
		"max-streams-per-ip":       {val: "16"},
		"max-streams-per-user":     {val: "0"},
		"key-ttl":                  {val: "24h0m0s"},
		"key-remember-ttl":         {val: "48h0m0s"},
		"link-code-ttl":            {val: "5m0s"},
		"session-idle-timeout":     {val: "1h0m0s"},
		"session-max-age":          {val: "2h0m0s"},
		"response-header-timeout":  {val: "1m0s"},
		"tunnel-idle-timeout":      {val: "1s"},
		"tunnel-dial-timeout":      {val: "4s"},
		"read-header-timeout":      {val: "5s"},
		"allowed-origins":          {val: "https://app.test,http://localhost:*"},
		"reserved-names":           {val: "admin,www"},
		"oidc-issuer":              {val: "https://idp.example/realms/x", extra: oidc[2:]},
		"oidc-client-id":           {val: "tg", extra: append(slices.Clone(oidc[:2]), oidc[4:]...)},
		"oidc-client-secret":       {val: "file:" + secretFile, extra: oidc[:4]},
		"oidc-scopes":              {val: "openid,groups", extra: oidc},
		"oidc-groups-claim":        {val: "roles", extra: oidc},
		"oidc-allowed-domains":     {val: "example.com,example.org", extra: oidc},
		"oidc-provisioned-only":    {val: "true", extra: oidc},
		"oidc-name":                {val: "Example SSO", extra: oidc},
		"log-level":                {val: "debug"},
		"log-format":               {val: "text"},

		"tunnel-auth":                      {val: "none"},
		"oauth-scopes":                     {val: "mcp,mcp:read"},
		"oauth-method-scopes":              {val: "tools/call=mcp:call"},
		"oauth-dynamic-registration":       {val: "false"},
		"oauth-metadata-documents":         {val: "false"},
		"oauth-metadata-documents-private": {val: "true"},
		"oauth-clients-file":               {val: "/etc/toolgate/clients.yaml"},
		"oauth-access-token-ttl":           {val: "10m0s"},
		"oauth-refresh-token-ttl":          {val: "24h0m0s"},
		"oauth-refresh-grace":              {val: "5s"},
		"oauth-registrations-per-minute":   {val: "3"},
		"policy":                           {val: "/etc/toolgate/policy.yaml"},
		"max-auth-age":                     {val: "30m0s"},
		"max-body":                         {val: "65536"},
		"body-timeout":                     {val: "10s"},
		"audit-max-age":                    {val: "168h0m0s"},
		"audit-max-records":                {val: "5000"},
		"audit-args":                       {val: "true"},
		"audit-jsonl":                      {val: "/var/log/toolgate-audit.jsonl"},
	}
	def := mustLoad(t, nil, nil)
	newFlagSet(&settings{}, io.Discard).VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		v, ok := values[f.Name]
		if !ok {
			t.Errorf("flag --%s has no test value", f.Name)
			return
		}
		t.Run(f.Name, func(t *testing.T) {
			viaFlag := mustLoad(t, append([]string{"--" + f.Name + "=" + v.val}, v.extra...), nil)
			viaEnv := mustLoad(t, v.extra, map[string]string{envName(f.Name): v.val})
			viaFile := mustLoad(t, append([]string{"--config", configFile(t, f.Name+": '"+v.val+"'\n")}, v.extra...), nil)
			viaFile.Config = ""
			if !reflect.DeepEqual(viaFlag, viaEnv) || !reflect.DeepEqual(viaFlag, viaFile) {
				t.Errorf("sources disagree:\nflag: %+v\nenv:  %+v\nfile: %+v", *viaFlag, *viaEnv, *viaFile)
			}
			if got := settingValue(t, viaFlag, f.Name); got != v.val {
				t.Errorf("--%s=%s gives %q", f.Name, v.val, got)
			}
			if reflect.DeepEqual(viaFlag, def) {
				t.Errorf("--%s=%s changed nothing", f.Name, v.val)
			}
		})
	})
	if got := envName("max-connections-per-user"); got != "TOOLGATE_MAX_CONNECTIONS_PER_USER" {
		t.Errorf("envName = %q", got)
	}
}

// TestSettingsYAMLLists: list settings take a YAML list (flow or block), or a comma-separated
// string, and a flag replaces the file's list.
func TestSettingsYAMLLists(t *testing.T) {
	want := stringList{"https://a.test", "http://localhost:*"}
	for name, content := range map[string]string{
		"block":  "allowed-origins:\n  - https://a.test\n  - \"http://localhost:*\"\n",
		"flow":   "allowed-origins: [https://a.test, \"http://localhost:*\"]\n",
		"string": "allowed-origins: \"https://a.test, http://localhost:*\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := mustLoad(t, []string{"--config", configFile(t, content)}, nil)
			if !slices.Equal(s.AllowedOrigins, want) {
				t.Errorf("allowed-origins = %q, want %q", s.AllowedOrigins, want)
			}
		})
	}
	s := mustLoad(t, []string{"--config", configFile(t, "allowed-origins: []\n")}, nil)
	if len(s.AllowedOrigins) != 0 {
		t.Errorf("empty list gave %q", s.AllowedOrigins)
	}
	s = mustLoad(t, []string{"--config", configFile(t, "allowed-origins: [https://a.test, https://b.test]\n"),
		"--allowed-origins", "https://c.test"}, nil)
	if !slices.Equal(s.AllowedOrigins, stringList{"https://c.test"}) {
		t.Errorf("flag over file list: %q", s.AllowedOrigins)
	}
}

// TestSettingsOtherValues: normalisation and values that are valid though unusual.
func TestSettingsOtherValues(t *testing.T) {
	s := mustLoad(t, []string{"--domain", "Example.COM.", "--authorized-keys", "k", "--acme-email", "a@b.test"}, nil)
	if s.Domain != "example.com" || s.TunnelDomain != "example.com" {
		t.Errorf("domain %q tunnel-domain %q, want example.com for both", s.Domain, s.TunnelDomain)
	}
	if !s.useACME() || s.acmeCA() != "https://acme-v02.api.letsencrypt.org/directory" {
		t.Errorf("a public domain should use Let's Encrypt: useACME %v CA %q", s.useACME(), s.acmeCA())
	}
	// A private ACME CA for a .localhost domain is ACME too, so it needs an email.
	s = mustLoad(t, []string{"--acme-ca", "https://ca.test/dir", "--acme-email", "a@b.test"}, nil)
	if !s.useACME() || s.acmeCA() != "https://ca.test/dir" {
		t.Errorf("acme-ca: useACME %v CA %q", s.useACME(), s.acmeCA())
	}
	// Port 0 listeners (tests) and an admin listener turned off are fine.
	mustLoad(t, []string{"--https-listen", "127.0.0.1:0", "--ssh-listen", ":0", "--admin-listen", ""}, nil)
	mustLoad(t, nil, map[string]string{"TOOLGATE_ADMIN_LISTEN": ""})
}

// TestSettingsErrors: every error names the setting and where the bad value came from.
func TestSettingsErrors(t *testing.T) {
	type tc struct {
		name string
		args []string
		env  map[string]string
		file string // if set, written and passed with --config
		want []string
		// fileLine: the error must name the config file with this line ("path:line").
		fileLine string
	}
	cases := []tc{
		{name: "unknown YAML key", file: "domain: a.localhost\n\nbogus: 1\n", fileLine: "3",
			want: []string{`unknown setting "bogus"`}},
		{name: "config key in the file", file: "config: other.yaml\n", fileLine: "1",
			want: []string{`unknown setting "config"`}},
		{name: "bad value in YAML", file: "ssh-keepalive-count: 3\nread-header-timeout: soon\n", fileLine: "2",
			want: []string{"setting read-header-timeout", `"soon"`}},
		{name: "YAML mapping value", file: "domain:\n  a: b\n", fileLine: "1",
			want: []string{"setting domain", "a value or a list"}},
		{name: "YAML list of mappings", file: "reserved-names:\n  - a: b\n", fileLine: "1",
			want: []string{"setting reserved-names", "list items"}},
		{name: "YAML file is a list", file: "- domain\n- a.localhost\n", fileLine: "1",
			want: []string{"expected a mapping"}},
		{name: "YAML syntax", file: "domain: [a\n", want: []string{"config file"}},
		{name: "missing config file", args: []string{"--config", "/nonexistent/toolgate.yaml"},
			want: []string{"config file", "/nonexistent/toolgate.yaml"}},
		{name: "bad duration from env", env: map[string]string{"TOOLGATE_SSH_HANDSHAKE_TIMEOUT": "soon"},
			want: []string{"setting ssh-handshake-timeout", "TOOLGATE_SSH_HANDSHAKE_TIMEOUT", `"soon"`}},
		{name: "bad int from env", env: map[string]string{"TOOLGATE_MAX_TUNNELS_PER_USER": "many"},
			want: []string{"setting max-tunnels-per-user", "TOOLGATE_MAX_TUNNELS_PER_USER"}},
		{name: "bad bool from env", env: map[string]string{"TOOLGATE_DEV": "maybe"},
			want: []string{"setting dev", "TOOLGATE_DEV"}},
		{name: "two bad env values", env: map[string]string{"TOOLGATE_DEV": "maybe", "TOOLGATE_READ_HEADER_TIMEOUT": "x"},
			want: []string{"TOOLGATE_DEV", "TOOLGATE_READ_HEADER_TIMEOUT"}},
		{name: "bad flag value", args: []string{"--ssh-keepalive-count", "abc"},
			want: []string{"-ssh-keepalive-count", `"abc"`}},
		{name: "bad duration flag", args: []string{"--tunnel-dial-timeout=10"},
			want: []string{"-tunnel-dial-timeout", `"10"`}},
		{name: "unknown flag", args: []string{"--bogus"}, want: []string{"-bogus"}},
		{name: "positional argument", args: []string{"extra"}, want: []string{`"extra"`}},
		{name: "listen address without port", args: []string{"--https-listen", "127.0.0.1"},
			want: []string{"setting https-listen", `"127.0.0.1"`}},
		{name: "listen port out of range", args: []string{"--ssh-listen", "127.0.0.1:70000"},
			want: []string{"setting ssh-listen", "70000"}},
		{name: "named listen port", args: []string{"--http-listen", "127.0.0.1:http"},
			want: []string{"setting http-listen"}},
		{name: "unknown tunnel auth", args: []string{"--tunnel-auth", "basic"},
			want: []string{"setting tunnel-auth", `"basic"`}},
		{name: "method scope without scope", args: []string{"--oauth-method-scopes", "tools/call="},
			want: []string{"setting oauth-method-scopes", `"tools/call="`}},
		{name: "scope with a quote", args: []string{"--oauth-scopes", `mcp,a"b`},
			want: []string{"setting oauth-scopes", `a\"b`}},
		{name: "zero token lifetime", args: []string{"--oauth-access-token-ttl", "0s"},
			want: []string{"setting oauth-access-token-ttl"}},
		{name: "bad admin listen from env", env: map[string]string{"TOOLGATE_ADMIN_LISTEN": "nowhere"},
			want: []string{"setting admin-listen", `"nowhere"`}},
		{name: "zero key ttl", args: []string{"--key-ttl", "0s"}, want: []string{"setting key-ttl", "positive"}},
		{name: "negative session age from env", env: map[string]string{"TOOLGATE_SESSION_MAX_AGE": "-1h"},
			want: []string{"setting session-max-age", "positive"}},
		{name: "ACME without email", args: []string{"--domain", "example.com", "--authorized-keys", "k"},
			want: []string{"setting acme-email"}},
		{name: "acme-ca without email", args: []string{"--acme-ca", "https://ca.test/dir"},
			want: []string{"setting acme-email"}},
		{name: "dev with a public domain",
			args: []string{"--dev", "--domain", "example.com", "--authorized-keys", "k", "--acme-email", "a@b.test"},
			want: []string{"setting dev", "example.com"}},
		{name: "dev with acme-ca", args: []string{"--dev", "--acme-ca", "https://ca.test/dir", "--acme-email", "a@b.test"},
			want: []string{"setting dev", "acme-ca"}},
		{name: "dev from env with a public domain from the file",
			env: map[string]string{"TOOLGATE_DEV": "1"}, file: "domain: example.com\nauthorized-keys: k\nacme-email: a@b.test\n",
			want: []string{"setting dev"}},
		{name: "empty domain", args: []string{"--domain", ""}, want: []string{"setting domain"}},
		{name: "domain with a port", args: []string{"--domain", "a.localhost:8443"}, want: []string{"setting domain"}},
		{name: "tunnel domain with a slash", args: []string{"--tunnel-domain", "a/b.localhost"}, want: []string{"setting tunnel-domain"}},
		{name: "zero duration", args: []string{"--read-header-timeout", "0s"}, want: []string{"setting read-header-timeout", "positive"}},
		{name: "negative duration", args: []string{"--tunnel-idle-timeout=-1s"}, want: []string{"setting tunnel-idle-timeout", "-1s"}},
		{name: "zero duration from env", env: map[string]string{"TOOLGATE_SSH_KEEPALIVE_INTERVAL": "0"},
			want: []string{"setting ssh-keepalive-interval"}},
		{name: "zero count", args: []string{"--ssh-keepalive-count", "0"}, want: []string{"setting ssh-keepalive-count"}},
		{name: "negative limit", args: []string{"--max-tunnels-per-user=-1"}, want: []string{"setting max-tunnels-per-user", "-1"}},
		{name: "negative stream limit", args: []string{"--max-streams-per-ip=-1"}, want: []string{"setting max-streams-per-ip", "-1"}},
		{name: "negative rate", args: []string{"--rate-per-user=-2"}, want: []string{"setting rate-per-user", "-2"}},
		{name: "rate not a number", args: []string{"--rate-per-ip=NaN"}, want: []string{"setting rate-per-ip", "NaN"}},
		{name: "zero limit from file", file: "max-connections-per-user: 0\n", want: []string{"setting max-connections-per-user"}},
		{name: "negative public port", args: []string{"--public-https-port=-1"}, want: []string{"setting public-https-port"}},
		{name: "public port too big", args: []string{"--public-ssh-port", "65536"}, want: []string{"setting public-ssh-port"}},
		{name: "log level", args: []string{"--log-level", "verbose"}, want: []string{"setting log-level", `"verbose"`}},
		{name: "ssh cipher", args: []string{"--ssh-ciphers", "aes128-gcm@openssh.com,rot13"}, want: []string{"setting ssh-ciphers", `"rot13"`}},
		{name: "log format", args: []string{"--log-format", "xml"}, want: []string{"setting log-format", `"xml"`}},
		{name: "origin without scheme", args: []string{"--allowed-origins", "localhost:3000"},
			want: []string{"setting allowed-origins", `"localhost:3000"`}},
		{name: "several bad settings at once", args: []string{"--log-format", "xml", "--ssh-keepalive-count", "0"},
			want: []string{"setting log-format", "setting ssh-keepalive-count"}},
		{name: "oidc client id without issuer", args: []string{"--oidc-client-id", "tg"},
			want: []string{"setting oidc-client-id", "without oidc-issuer"}},
		{name: "oidc secret without issuer", env: map[string]string{"TOOLGATE_OIDC_CLIENT_SECRET": "env:X"},
			want: []string{"setting oidc-client-secret", "without oidc-issuer"}},
		{name: "oidc domains without issuer", file: "oidc-allowed-domains: [example.com]\n",
			want: []string{"setting oidc-allowed-domains", "without oidc-issuer"}},
		{name: "oidc issuer alone", args: []string{"--oidc-issuer", "https://idp.example"},
			want: []string{"setting oidc-client-id", "setting oidc-client-secret"}},
		{name: "oidc issuer over http", args: []string{"--oidc-issuer", "http://idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "env:S"},
			want: []string{"setting oidc-issuer", "https"}},
		{name: "oidc issuer not a URL", args: []string{"--oidc-issuer", "idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "env:S"},
			want: []string{"setting oidc-issuer", `"idp.example"`}},
		{name: "oidc secret variable missing", args: []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "env:TG_IDP_SECRET"},
			want: []string{"setting oidc-client-secret", "TG_IDP_SECRET", "not set"}},
		{name: "oidc secret file missing", args: []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "file:/nonexistent/secret"},
			want: []string{"setting oidc-client-secret", "/nonexistent/secret"}},
		{name: "oidc allowed domain", args: []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "env:S", "--oidc-allowed-domains", "example.com/x"},
			env: map[string]string{"S": "x"}, want: []string{"setting oidc-allowed-domains", `"example.com/x"`}},
		{name: "oidc groups claim empty", args: []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "tg", "--oidc-client-secret", "env:S", "--oidc-groups-claim", ""},
			env: map[string]string{"S": "x"}, want: []string{"setting oidc-groups-claim"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			var path string
			if c.file != "" {
				path = configFile(t, c.file)
				args = append([]string{"--config", path}, args...)
			}
			_, err := loadSettings(args, envOf(c.env), io.Discard)
			if err == nil {
				t.Fatalf("loadSettings(%q, %v) succeeded; want an error", args, c.env)
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if c.fileLine != "" && !strings.Contains(msg, path+":"+c.fileLine) {
				t.Errorf("error %q does not name %s:%s", msg, path, c.fileLine)
			}
		})
	}
}

// TestSettingsDevTunnelDomain: --dev promises a local CA and .localhost names, so a public
// tunnel domain (which switches certificates to ACME) contradicts it like a public domain does.
func TestSettingsDevTunnelDomain(t *testing.T) {
	_, err := loadSettings([]string{"--dev", "--tunnel-domain", "tunnels.example.com",
		"--authorized-keys", "k", "--acme-email", "a@b.test"}, envOf(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "setting dev") {
		t.Errorf("--dev with a public tunnel domain: err = %v, want an error naming setting dev", err)
	}
}

// TestSettingsACMEValues: ACME values that web.NewCertManager would refuse are configuration
// errors naming the setting (exit 2 before anything is opened), not a web.ACMEConfig error at
// startup.
func TestSettingsACMEValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme-ca", "https://ca.test/dir", "--acme-email", "ops"}, "setting acme-email"},
		{[]string{"--acme-ca", "http://ca.test/dir", "--acme-email", "ops@ca.test"}, "setting acme-ca"},
	} {
		_, err := loadSettings(tc.args, envOf(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// TestSettingsEmptyYAMLDocument: a file holding only an empty document ("---", perhaps with
// comments, as config templates often start) sets nothing, like an empty file.
func TestSettingsEmptyYAMLDocument(t *testing.T) {
	for _, content := range []string{"---\n", "---\n# toolgate settings\n"} {
		if _, err := loadSettings([]string{"--config", configFile(t, content)}, envOf(nil), io.Discard); err != nil {
			t.Errorf("config file %q: %v", content, err)
		}
	}
}

func TestSettingsHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := loadSettings([]string{"-h"}, envOf(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: err = %v, want flag.ErrHelp", err)
	}
	for _, w := range []string{"-authorized-keys", "-acme-ca-roots", "-https-listen", "-dev"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("help does not list %s:\n%s", w, out.String())
		}
	}
}

// TestResolveSecret: env:NAME and file:PATH are read (errors name the setting, never a
// secret); anything else is the secret itself, flagged as a literal.
func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, empty := write("good", "  from-the-file\n"), write("empty", "\n")
	env := envOf(map[string]string{"IDP_SECRET": "from-the-env", "BLANK": ""})
	for _, tc := range []struct {
		value, want string
		literal     bool
		err         []string // substrings of the error; nil: no error
	}{
		{value: "env:IDP_SECRET", want: "from-the-env"},
		{value: "file:" + good, want: "from-the-file"},
		{value: "hunter2-literal", want: "hunter2-literal", literal: true},
		{value: "Env:IDP_SECRET", want: "Env:IDP_SECRET", literal: true}, // prefixes are case-sensitive
		{value: "env:MISSING", err: []string{"setting oidc-client-secret", "MISSING", "not set"}},
		{value: "env:BLANK", err: []string{"setting oidc-client-secret", "BLANK", "empty"}},
		{value: "env:", err: []string{"setting oidc-client-secret", "env:NAME"}},
		{value: "file:" + filepath.Join(dir, "missing"), err: []string{"setting oidc-client-secret", filepath.Join(dir, "missing")}},
		{value: "file:" + empty, err: []string{"setting oidc-client-secret", empty, "empty"}},
		{value: "file:", err: []string{"setting oidc-client-secret", "file:"}},
		{value: "", err: []string{"setting oidc-client-secret", "required"}},
	} {
		got, literal, err := resolveSecret("oidc-client-secret", tc.value, env, os.ReadFile)
		if tc.err == nil {
			if err != nil || got != tc.want || literal != tc.literal {
				t.Errorf("%q: got %q literal %v err %v, want %q literal %v", tc.value, got, literal, err, tc.want, tc.literal)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: got %q, want an error", tc.value, got)
			continue
		}
		for _, w := range tc.err {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not mention %q", tc.value, err, w)
			}
		}
		if strings.Contains(err.Error(), "from-the-") {
			t.Errorf("%q: error %q holds a secret", tc.value, err)
		}
	}
}

// TestSettingsOIDCSecret: the secret is resolved at load time; a literal in the config file or
// on the command line is flagged for the startup warning, one in TOOLGATE_OIDC_CLIENT_SECRET
// (a secret kept in the environment) is not.
func TestSettingsOIDCSecret(t *testing.T) {
	base := []string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "tg"}
	for _, tc := range []struct {
		name    string
		args    []string
		file    string
		env     map[string]string
		want    string
		literal bool
	}{
		{name: "env reference", args: []string{"--oidc-client-secret", "env:IDP"}, env: map[string]string{"IDP": "abc"}, want: "abc"},
		{name: "literal flag", args: []string{"--oidc-client-secret", "abc"}, want: "abc", literal: true},
		{name: "literal in the file", file: "oidc-client-secret: abc\n", want: "abc", literal: true},
		{name: "literal in TOOLGATE_OIDC_CLIENT_SECRET", env: map[string]string{"TOOLGATE_OIDC_CLIENT_SECRET": "abc"}, want: "abc"},
		{name: "flag over the variable", args: []string{"--oidc-client-secret", "xyz"},
			env: map[string]string{"TOOLGATE_OIDC_CLIENT_SECRET": "abc"}, want: "xyz", literal: true},
		{name: "variable over the file", file: "oidc-client-secret: abc\n",
			env: map[string]string{"TOOLGATE_OIDC_CLIENT_SECRET": "env:IDP", "IDP": "def"}, want: "def"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(slices.Clone(base), tc.args...)
			if tc.file != "" {
				args = append(args, "--config", configFile(t, tc.file))
			}
			s := mustLoad(t, args, tc.env)
			if s.oidcSecret != tc.want || s.oidcSecretLiteral != tc.literal {
				t.Errorf("secret %q literal %v, want %q literal %v", s.oidcSecret, s.oidcSecretLiteral, tc.want, tc.literal)
			}
		})
	}
	// Allowed domains are normalized; "-" turns groups off.
	s := mustLoad(t, append(slices.Clone(base), "--oidc-client-secret", "env:IDP", "--oidc-allowed-domains", "@Example.COM, example.org",
		"--oidc-groups-claim", "-"), map[string]string{"IDP": "x"})
	if strings.Join(s.OIDCAllowedDomains, ",") != "example.com,example.org" || s.OIDCGroupsClaim != "-" {
		t.Errorf("domains %q groups claim %q", s.OIDCAllowedDomains, s.OIDCGroupsClaim)
	}
	// http is fine for a loopback issuer (development).
	mustLoad(t, []string{"--oidc-issuer", "http://127.0.0.1:5556/dex", "--oidc-client-id", "tg", "--oidc-client-secret", "env:IDP"}, map[string]string{"IDP": "x"})
}
