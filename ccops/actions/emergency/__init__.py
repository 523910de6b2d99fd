"""The guide's emergency procedures: evidence first, actions only when told, a timeline always."""
