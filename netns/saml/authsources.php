<?php
/*
 * Lab IdP auth sources: `lab-userpass` (exampleauth:UserPass) with the users and
 * passwords of lab.json. Each user gets uid, email (<user>@corp.example unless lab.json
 * says otherwise), displayName and memberOf.
 */
$lab = require __DIR__ . '/lab.php';

$users = [];
foreach ($lab['users'] as $u) {
    // exampleauth:UserPass keys are "username:password" (split at the first ':').
    $users[$u['user'] . ':' . $u['password']] = $u['attributes'];
}

$config = [
    'admin' => ['core:AdminPassword'],
    'lab-userpass' => array_merge(['exampleauth:UserPass'], $users),
];
