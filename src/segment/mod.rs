//! The segment filter language: parse → typed AST → parameterised SQL.
