<?php
/*
 * Shared by the lab IdP's config files: reads lab.json, written next to them in the
 * rendered config dir (SIMPLESAMLPHP_CONFIG_DIR) by tests/src/idp.rs:
 *   {"base_url": "http://198.18.0.30:8080/simplesaml/",   SimpleSAMLphp's baseurlpath
 *    "entity_id": "http://.../saml2/idp/metadata.php",    the IdP's entity ID
 *    "dir": "/tmp/headend-lab-ID/idp",                    state, sessions, keys
 *    "secret_salt": "...", "admin_password": "...",
 *    "users": [{"user": "alice", "password": "...", "attributes": {"memberOf": [...], ...}}],
 *    "sps": [{"entity_id": "https://198.18.0.1/saml/sp/metadata/TG",
 *             "acs": "https://198.18.0.1/+CSCOE+/saml/sp/acs?tgname=TG",
 *             "slo": "https://198.18.0.1/+CSCOE+/saml/sp/logout",
 *             "sign_response": false}]}          sign the Response too (the Assertion always)
 */
if (!function_exists('lab_idp_settings')) {
    function lab_idp_settings(): array
    {
        static $lab = null;
        if ($lab === null) {
            $path = __DIR__ . '/lab.json';
            $lab = json_decode(file_get_contents($path), true, 16, JSON_THROW_ON_ERROR);
        }
        return $lab;
    }
}
return lab_idp_settings();
