#!/usr/bin/php-cgi
<?php
header('Content-Type: text/plain');
echo 'php-cgi ', $_SERVER['REQUEST_METHOD'], ' ', $_SERVER['SCRIPT_NAME'], ' ', strlen(file_get_contents('php://input'));
