<?php
/*
 * SimpleSAMLphp 1.19 (Debian 12 `simplesamlphp`) main config for the lab IdP.
 * Copied verbatim into the lab's IdP config dir; every per-lab value comes from
 * lab.json (see lab.php). Served by `php -S 198.18.0.30:8080 -t DOCROOT` where
 * DOCROOT/simplesaml is a symlink to /usr/share/simplesamlphp/www, so the URLs are
 * http://198.18.0.30:8080/simplesaml/... as on a stock install.
 */
$lab = require __DIR__ . '/lab.php';

$config = [
    'baseurlpath' => $lab['base_url'],
    'certdir' => __DIR__ . '/cert/',
    'loggingdir' => $lab['dir'] . '/log/',
    'datadir' => $lab['dir'] . '/data/',
    'tempdir' => $lab['dir'] . '/tmp',
    'metadatadir' => __DIR__ . '/',
    'attributenamemapdir' => '/etc/simplesamlphp/attributemap/',

    'technicalcontact_name' => 'Lab',
    'technicalcontact_email' => 'lab@corp.example',
    'timezone' => 'UTC',
    'secretsalt' => $lab['secret_salt'],
    'auth.adminpassword' => $lab['admin_password'],
    'admin.protectindexpage' => false,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    'trusted.url.domains' => [],
    'enable.http_post' => false,
    'assertion.allowed_clock_skew' => 180,

    'debug' => ['saml' => true, 'backtraces' => true, 'validatexml' => false],
    'showerrors' => true,
    'errorreporting' => false,
    // To php -S's stderr, i.e. the lab's idp.log.
    'logging.level' => SimpleSAML\Logger::DEBUG,
    'logging.handler' => 'stderr',
    'logging.processname' => 'simplesamlphp',
    'statistics.out' => [],

    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => [
        'exampleauth' => true,
        'core' => true,
        'saml' => true,
        'admin' => true,
    ],

    // Plain HTTP in the lab: cookies must not be Secure (curl drops Secure cookies
    // set over http://), and SameSite=None needs Secure.
    'session.duration' => 8 * 3600,
    'session.datastore.timeout' => 4 * 3600,
    'session.state.timeout' => 3600,
    'session.cookie.name' => 'SimpleSAMLSessionID',
    'session.cookie.lifetime' => 0,
    'session.cookie.path' => '/',
    'session.cookie.domain' => null,
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.phpsession.cookiename' => 'SimpleSAML',
    'session.phpsession.savepath' => $lab['dir'] . '/sessions',
    'session.phpsession.httponly' => true,
    'session.authtoken.cookiename' => 'SimpleSAMLAuthToken',
    'session.rememberme.enable' => false,
    'store.type' => 'phpsession',

    'language.default' => 'en',
    'language.available' => ['en'],
    'language.cookie.secure' => false,
    'language.cookie.samesite' => null,

    'theme.use' => 'default',
    'template.auto_reload' => false,
    'production' => true,

    // No attribute renaming: the SP gets uid, email, displayName, memberOf as named.
    'authproc.idp' => [],
    'authproc.sp' => [],
];
