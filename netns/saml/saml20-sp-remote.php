<?php
/*
 * The headend's SAML service providers, one per SAML tunnel group TG (ASA conventions):
 *   entity ID  https://198.18.0.1/saml/sp/metadata/TG
 *   ACS        https://198.18.0.1/+CSCOE+/saml/sp/acs?tgname=TG   (HTTP-POST)
 *   SLO        https://198.18.0.1/+CSCOE+/saml/sp/logout          (HTTP-Redirect)
 * NameID = the user's email attribute, format emailAddress (Entra's UPN default).
 * The Assertion is always signed; the Response too when the entry says sign_response.
 */
$lab = require __DIR__ . '/lab.php';

foreach ($lab['sps'] as $sp) {
    $metadata[$sp['entity_id']] = [
        'AssertionConsumerService' => [
            [
                'Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
                'Location' => $sp['acs'],
                'index' => 0,
                'isDefault' => true,
            ],
        ],
        'SingleLogoutService' => [
            [
                'Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
                'Location' => $sp['slo'],
            ],
        ],
        'NameIDFormat' => 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
        'simplesaml.nameidattribute' => 'email',
        'simplesaml.attributes' => true,
        'attributes' => ['uid', 'email', 'displayName', 'memberOf'],
        'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
        'saml20.sign.assertion' => true,
        'saml20.sign.response' => (bool) ($sp['sign_response'] ?? false),
        'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        'validate.authnrequest' => false,
    ];
}
