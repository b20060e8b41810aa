<?php
/*
 * The lab IdP itself. Entity ID = its metadata URL, as SimpleSAMLphp's __DYNAMIC:1__
 * would give. Signs with the per-lab RSA 2048 key (cert/idp.key, cert/idp.crt) using
 * RSA-SHA256. The Assertion is always signed; the whole Response only for the SPs
 * whose lab.json entry says sign_response (saml20-sp-remote.php): Entra ID's default
 * signs the Assertion only, SimpleSAMLphp's would sign both.
 */
$lab = require __DIR__ . '/lab.php';

$metadata[$lab['entity_id']] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'lab-userpass',
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => false,
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
    'simplesaml.nameidattribute' => 'email',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    // Unsigned AuthnRequests accepted (ASA: `no signature`).
    'validate.authnrequest' => false,
];
