<?php
// Debian's wp-config.php loads this when no config-<host>.php exists. Everything secret
// comes from the container's environment (generated per OverCloud, never defaulted), unless
// the secrets were rotated in place (a pooled node claimed by an OverCloud): then from
// /etc/overcloud/secrets.env (KEY=value lines), read per request, which outlives a restart
// but not a re-creation (the environment, from the rotated .env, has them then).
function oc_rotated() {
    static $v = null;
    if ($v === null) {
        $v = array();
        $t = @file_get_contents('/etc/overcloud/secrets.env');
        foreach ($t === false ? array() : explode("\n", $t) as $line) {
            $p = strpos($line, '=');
            if ($p > 0) {
                $v[substr($line, 0, $p)] = substr($line, $p + 1);
            }
        }
    }
    return $v;
}
function oc_env($name) {
    $r = oc_rotated();
    $v = isset($r[$name]) ? $r[$name] : getenv($name);
    if ($v === false || $v === '') {
        header('HTTP/1.1 500 Internal Server Error');
        exit("missing setting $name\n");
    }
    return $v;
}
define('DB_NAME', oc_env('DB_NAME'));
define('DB_USER', oc_env('DB_USER'));
define('DB_PASSWORD', oc_env('DB_PASSWORD'));
// The database's address, read per request: when the database node moves, the orchestrator
// rewrites this file (atomically, by rename) and the next request goes to the new database,
// with nothing restarted (orchestrator/dbmove.py). Without the file: the environment.
function oc_db_host() {
    $v = @file_get_contents('/etc/wordpress/db-host');
    return ($v !== false && trim($v) !== '') ? trim($v) : oc_env('DB_HOST');
}
define('DB_HOST', oc_db_host());
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
define('AUTH_KEY', oc_env('WP_AUTH_KEY'));
define('SECURE_AUTH_KEY', oc_env('WP_SECURE_AUTH_KEY'));
define('LOGGED_IN_KEY', oc_env('WP_LOGGED_IN_KEY'));
define('NONCE_KEY', oc_env('WP_NONCE_KEY'));
define('AUTH_SALT', oc_env('WP_AUTH_SALT'));
define('SECURE_AUTH_SALT', oc_env('WP_SECURE_AUTH_SALT'));
define('LOGGED_IN_SALT', oc_env('WP_LOGGED_IN_SALT'));
define('NONCE_SALT', oc_env('WP_NONCE_SALT'));
define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');
$table_prefix = 'wp_';
// behind our nginx: keep the host and port the browser used
if (isset($_SERVER['HTTP_X_FORWARDED_PROTO']) && $_SERVER['HTTP_X_FORWARDED_PROTO'] === 'https') {
    $_SERVER['HTTPS'] = 'on';
}
